"""open-data-api: the public, read-only API over the city's telemetry (latest readings, time
ranges with a bucket size) and the datasets published in the ``open-data`` bucket."""
