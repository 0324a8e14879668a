"""The digital twin: a discrete-event driver of the scheduling core, fed by workload traces."""
