"""Migration strategies behind one registry (strategies.base), the Gymnasium environment they
train on (strategies.env, registered as GreenWise-v0 when imported), RL and evaluation."""
