// Package option defines Error, the one error type that the Validate
// methods of the project's option and configuration structs return.
// Packages export it under their own name with a type alias (nn.OptionError,
// dnnl.OptionError, dataset.OptionError), so that callers outside the
// module match it with errors.As and read its fields.
package option

import "fmt"

// Error reports an invalid option: which field, the rejected value and
// what a valid value looks like.
type Error struct {
	Pkg    string // the reporting package, e.g. "nn"
	Field  string // the struct and field, e.g. "TrainOptions.Epochs"
	Value  any    // the rejected value
	Reason string // what a valid value looks like, e.g. "want >= 1"
}

// Error formats "pkg: invalid Field = Value: Reason".
func (e *Error) Error() string {
	return fmt.Sprintf("%s: invalid %s = %v: %s", e.Pkg, e.Field, e.Value, e.Reason)
}

// New returns an *Error; the Validate methods call it as
// option.New("nn", "TrainOptions.Epochs", o.Epochs, "want >= 1").
func New(pkg, field string, value any, reason string) *Error {
	return &Error{Pkg: pkg, Field: field, Value: value, Reason: reason}
}
