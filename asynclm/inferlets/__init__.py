"""Example inferlets: programs that drive the inference core through the Context API."""
