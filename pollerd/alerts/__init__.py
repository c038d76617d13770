"""Alert rules pollerd raises itself (DESIGN §3): operations (store failing) and seller rules."""
