//go:build !purego

package advtrain_test

// pureGo is set in the pure-Go build (purego_test.go).
const pureGo = false
