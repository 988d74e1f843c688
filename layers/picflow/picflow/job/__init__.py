"""The job layer: the steps of the job state machine (statemachine/job.asl.json), one module per
group of states. Handlers in ``functions/`` import the module of their step only (cold starts).
"""
