"""What the city APIs truly share: settings loading, JSON logs, health endpoints, the server
loop with graceful shutdown, and thin factories for their broker, database and storage clients."""
