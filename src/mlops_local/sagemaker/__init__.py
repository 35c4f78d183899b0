"""SageMaker for the stand-in: training and processing jobs that run, endpoints served by local model servers."""
