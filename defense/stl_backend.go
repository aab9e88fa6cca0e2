package defense

// DefaultBackend returns the backend of the real defense: nn's DAE and
// csc's dictionary learning and STL projection.
func DefaultBackend() Backend {
	return Backend{}
}
