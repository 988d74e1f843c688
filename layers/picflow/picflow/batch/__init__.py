"""The batch layer: batches of jobs (statemachine/batch.asl.json): planning, fetching URL items,
pause and resume, progress and the results manifest."""
