"""CloudFormation for the stand-in: the resource types moto drops, taught to moto's own CloudFormation."""
