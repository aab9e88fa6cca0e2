package cluster

import "fmt"

// OptionError reports an option outside its valid range.
type OptionError struct {
	Option string // field name, e.g. "KMeansOptions.K"
	Value  any
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("cluster: invalid %s = %v: %s", e.Option, e.Value, e.Reason)
}

// DataError reports input data that a fit or a query cannot use: too few
// rows, a width that does not match the fitted model, non-finite values.
type DataError struct {
	Op     string
	Reason string
}

func (e *DataError) Error() string { return fmt.Sprintf("cluster: %s: %s", e.Op, e.Reason) }
