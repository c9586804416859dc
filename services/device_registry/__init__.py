"""device-registry: register, list and retire devices in the ``devices`` database; send a
device a command through every broker pod."""
