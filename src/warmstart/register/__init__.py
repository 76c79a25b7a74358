"""The register stage (KFP component `register`): publish the model the gate passed (publish), and record it
in a Kubeflow Model Registry when one is configured (kubeflow_registry)."""
