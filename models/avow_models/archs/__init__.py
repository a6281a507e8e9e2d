"""Plain ``nn.Module`` architectures, state-dict compatible with their published weights."""
