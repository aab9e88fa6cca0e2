//go:build purego

package advtrain_test

// pureGo is set in the pure-Go build, whose convolutions are about ten
// times slower: the training test then trains with FGSM-RS only.
const pureGo = true
