"""IAM for the stand-in: who may call what, evaluated as AWS does."""
