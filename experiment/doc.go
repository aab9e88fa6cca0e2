// Package experiment runs the paper's evaluation end to end, the job behind
// `stl run` (Sun et al., CVPR 2019, section 5):
//
//  1. train the vanilla classifier on clean images;
//  2. build the defense: the denoising auto-encoder whose latent codes are
//     clustered, and the convolutional dictionaries, one universal ("STL")
//     and one per cluster ("STL (cluster)") (sections 3.2-3.4);
//  3. project the training and test sets with each defense and retrain a
//     classifier on each projected training set (section 3.5);
//  4. compute adversarial test sets on the vanilla classifier: FGSM at
//     normalized L2 dissimilarity 0.08 and 0.04, BIM, DeepFool and CW at
//     0.04 (section 5.1);
//  5. evaluate in the form of Table 1 (each defense's retrained classifier on
//     its transformed clean and adversarial sets) and Table 5 (the vanilla
//     classifier on transformed sets), for No Defense, STL, STL (cluster)
//     and every baseline the project has;
//  6. the lambda sweep of Figure 5 (section 5.5): STL (cluster) projecting
//     with each lambda, evaluated on the vanilla classifier;
//  7. optionally (Config.WhiteBox) the white-box evaluation of Table 4
//     (section 5.3): PGD at L-infinity 0.031 through BPDA (MagNet's exact
//     gradient), EOT for randomized defenses, on the cross-entropy and on
//     the Carlini-Wagner margin loss (Config.WhiteBoxLosses, one column
//     each), with the sanity checks (on the cross-entropy attack) on No
//     Defense, STL and STL (cluster), and on the baselines
//     with Config.SanityBaselines: accuracy against PGD iterations and
//     against the L-infinity budget, a random sign-noise control and a
//     transfer control (PGD on the vanilla classifier, through the
//     defense); Config.WhiteBoxSubset restricts both to a class-balanced
//     subset of the attacked images;
//  8. write the report (package report).
//
// The run directory holds the report files (report.md, report.html,
// results.json, results.csv, figures/), the cached stages (stages/, one
// directory per stage with its key in stage.json), the checkpoints of
// unfinished trainings (checkpoints/) and what the baselines learn from the
// training images (baselines/).
//
// Every stage is cached in the run directory under a key derived from its
// configuration and the keys of the stages it reads (package cache), so an
// interrupted run resumes where it stopped and a changed setting recomputes
// only what depends on it.
//
// NewAttackJob runs one attack over the images of a data set, through or
// before a defense, and saves the adversarial set: the job behind
// `stl attack`. LoadAttackJob loads the same without an attack, which
// SetAttack, SearchStrength (a strength reaching a target average
// dissimilarity) or FitUniversal (a universal perturbation fitted on
// training images) then give it.
package experiment
