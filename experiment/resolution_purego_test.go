//go:build purego

package experiment

// pureGoBuild reports whether the tests run in the pure-Go build (-tags
// purego), whose kernels are several times slower.
const pureGoBuild = true
