"""Training of binary neural networks: data, binarizers (incl. LNS), model zoo, training loop."""
