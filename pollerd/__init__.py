"""pollerd: order alerts for stores that cannot receive webhooks."""

import pollerd.failpoints  # noqa: F401 - first: a test's skewed clock before anything binds it

__version__ = "0.1.0"
