package experiment

// defaultTrainer returns the classifier trainer of package nn, or nil while
// package nn has no classifier training.
func defaultTrainer() Trainer { return nil }
