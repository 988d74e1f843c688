"""The ``picflow`` console command."""
