"""pollerd: order alerts for stores that cannot receive webhooks."""

__version__ = "0.1.0"
