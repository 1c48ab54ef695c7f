"""Migration strategies behind one registry, and the Gymnasium environment they train on."""

from strategies.env import ENV_ID, GreenWiseEnv, register

register()

__all__ = ["ENV_ID", "GreenWiseEnv"]
