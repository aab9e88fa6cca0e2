// Package attack computes adversarial examples against a Model: FGSM, BIM,
// PGD, DeepFool and Carlini-Wagner L2, with budgets as L-infinity epsilon or
// as the normalized L2 dissimilarity ||x_adv - x0||_2 / ||x0||_2 of the
// paper's section 5.1, and the adaptive BPDA and EOT attacks that go through
// an input transformation.
package attack
