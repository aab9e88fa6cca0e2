// Package attack computes adversarial examples against a Model: FGSM, BIM,
// PGD, DeepFool and Carlini-Wagner L2, with budgets as L-infinity epsilon or
// as the normalized L2 dissimilarity ||x_adv - x0||_2 / ||x0||_2 of the
// paper's section 5.1, and the adaptive BPDA and EOT attacks that go through
// an input transformation.
//
// # Attacks
//
// Every attack is built from an options struct with the paper's settings as
// documented defaults (DefaultFGSMOptions, ...) and implements Attack. Run takes a batch (N, C, H, W)
// of pixels in [0,1] and one label per image and returns a Result: the
// adversarial batch, clipped to [0,1], and per image the dissimilarity and
// L-infinity distance reached, the clean and adversarial predictions and
// whether the attack succeeded.
//
//   - FGSM (Goodfellow et al. 2015) spends its budget exactly before
//     clipping: x0 + eps*sign(g) for L-infinity, the sign step scaled to an
//     L2 length of eps*||x0||_2 for the dissimilarity (FGSM-0.04/0.08).
//   - BIM (Kurakin et al. 2017), PGD with random start (Madry et al. 2018),
//     DeepFool (Moosavi-Dezfooli et al. 2016) and CW-L2 (Carlini and Wagner
//     2017) never exceed their budget: iterates and results are projected
//     onto the budget ball (L2: the perturbation rescaled onto the sphere;
//     L-infinity: clamped) and onto [0,1]. Both projections only move pixels
//     towards x0, so the budget holds in the float32 result as measured.
//
// An attack's cost is counted in forward+backward passes of the model on
// the batch (Result.Passes): FGSM 1, BIM/PGD Steps, DeepFool up to
// MaxIter*(Candidates-1), CW up to BinarySteps*MaxIter. Each pass is one
// Model.InputGrad; the loss enters through its seed function (cross-entropy
// for FGSM/BIM, the cross-entropy or the CW margin (PGDOptions.Loss) for PGD,
// the logit differences for DeepFool, the CW margin for CW).
//
// # Registry
//
// Methods lists the attacks by the names the command line uses ("fgsm",
// ...), with their own options and whether they are targetable and
// randomized; Config holds the options of all of them, so that any can be
// built by name. PaperSettings lists the paper's settings by the names of
// its tables ("FGSM-0.08", ..., "BPDA"): a method, the paper's budget and
// the route of its gradients (gray-box on the undefended classifier or
// white-box through the defense). PaperAttack builds one.
//
// # Universal perturbations and target budgets
//
// FitUAP fits one universal perturbation for all images (Moosavi-Dezfooli
// et al. 2017, Algorithm 1: DeepFool steps over a set of fitting images,
// projected onto the budget, until a fooling rate); Universal adds it to
// any image: the UAP column of the paper's Table 3. SearchStrength sets an
// attack's strength (its Knob: the budget, or DeepFool's and CW's
// overshoot) so that the average normalized L2 dissimilarity over the
// attacked images, measured on the classifier's normalized tensors
// (MeanDissimilarityZ), reaches a target: Table 3's "average normalized
// L2-dissimilarity of 0.06" after Guo et al. 2018.
//
// # Adaptive attacks
//
// BPDA (Athalye et al. 2018) wraps a Transform T (the method set of
// defense.Transform, so every defense plugs in) and a Model into a Model
// whose forward pass is M(T(x)) and whose backward pass treats T as the
// identity or as a given differentiable Approx. EOT averages the gradients
// of several draws of a randomized transform. Both are Models, so every
// attack runs through them unchanged; Adaptive picks BPDA or EOT over BPDA.
// The paper's white-box setting (Table 4) is PGD at L-infinity 0.031
// through BPDA.
//
// # Saved sets
//
// A Set (NewSet, Save, LoadSet) stores an adversarial batch in a directory:
// adv.npy (float32, read back bit for bit), labels.npy and meta.json with
// the attack, its options and the per-image figures. RunBatches runs an
// attack over a large set in batches, reporting progress and, with a
// checkpoint directory, resuming an interrupted run.
//
// Attacks hold only validated options and are safe for concurrent use when
// the model is. Nothing in this package prints; randomness (PGD's start)
// comes from seeds in the options.
package attack
