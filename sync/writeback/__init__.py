"""Engine -> CRM: the idempotent write-back queue and the mirror of the sync log into the CRM."""
