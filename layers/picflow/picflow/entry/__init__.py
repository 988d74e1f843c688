"""Ways in besides the API: S3 uploads and provider callbacks."""
