// Package evaluate is the adaptive robustness evaluation behind `stl
// evaluate`: a suite of attacks on any classifier, alone or behind any
// defense (the STL, a baseline, or none), the per-image worst case over the
// suite, and automatic checks that flag the usual ways an evaluation
// overstates robustness (Carlini et al., "On Evaluating Adversarial
// Robustness", 2019; Tramer et al., "On Adaptive Attacks to Adversarial
// Example Defenses", NeurIPS 2020; Croce and Hein, "Reliable evaluation of
// adversarial robustness with an ensemble of diverse parameter-free
// attacks", ICML 2020).
//
// The suite (AttackNames), at each budget of Options.Budgets:
//
//   - PGD (Madry et al. 2018) with the cross-entropy and the
//     Carlini-Wagner margin loss, and APGD (Croce and Hein 2020) with the
//     cross-entropy, the DLR loss, the targeted DLR over the top
//     classes (APGD-T) and the Carlini-Wagner margin (APGD-CW, as Croce et
//     al., ICML 2022, attack test-time defenses), each through every gradient route of the defense
//     (Route: BPDA's identity backward pass, or an exact gradient), with EOT
//     over a randomized defense;
//   - Square (Andriushchenko et al. 2020), score-based, queries only: the
//     check gradient masking cannot fool;
//   - transfer: the undefended classifier's examples fed through the
//     defense (per image the first of its gradient attacks' examples that
//     fooled it, else its APGD-CE example);
//   - a random-noise control at the budget (RandomNoise).
//
// Every attack stops working on an image once it is misclassified, and
// the undefended classifier gets the same suite: it is the base the
// defense must not weaken and the transfer's source. An image is robust
// only when it is classified correctly without attack and after every
// attack (WorstCase); a randomized defense classifies each image
// Options.EvalDraws times and an image counts as correct only when every
// draw is.
//
// The automatic checks (Check, with the thresholds of Thresholds): zero or
// vanishing gradients, Square, transfer or noise breaking images every
// gradient attack left correct, more PGD iterations helping the defense,
// accuracy not reaching (about) 0 at L-infinity 0.25, an unbounded attack
// (L-infinity 1) not reaching 100% success, and the defense weakening its
// base classifier (clean or worst-case robust accuracy below it).
//
// Run returns a Report, written by WriteMarkdown, WriteHTML and WriteJSON.
// The package never prints: progress goes to Options.Progress.
package evaluate
