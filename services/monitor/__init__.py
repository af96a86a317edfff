"""The monitor service: FIDI and conflict-rate drift detection over the transaction stream."""
