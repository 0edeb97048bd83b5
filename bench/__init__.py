"""txchat's benchmark: a load generator, a naive baseline server and a runner (python -m bench)."""
