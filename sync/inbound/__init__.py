"""Field service -> engine: pull channels drained and push channels received into the inbox, processed."""
