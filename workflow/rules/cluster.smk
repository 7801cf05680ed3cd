# Included last: PBS profiles (profiles/polaris declares the resources `queue` and `ppn`) get each
# job's node count and queue planned with the DAG; with other profiles this changes nothing.
from evotrace.pbs import plan_rules

plan_rules(workflow)
