package nn

// Network returns the classifier's layer tree, a *Sequential whose first
// layer is the input normalization (*Normalize), for code that reads the
// architecture (exporters). It is shared with the classifier: using it
// while the classifier's methods run is a data race.
func (m *Classifier) Network() *Sequential { return m.net }
