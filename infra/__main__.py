"""smartnation Pulumi program: the stack name is the environment name (dev, staging, production)."""

import pulumi

from smartnation.settings import load_settings
from smartnation.stack import build

build(load_settings(pulumi.get_stack()))
