// Package advtrain is adversarial training: the classifier learns on
// adversarial examples of itself, computed afresh for every batch, which
// solves Madry et al.'s saddle-point problem (ICLR 2018, "Towards Deep
// Learning Models Resistant to Adversarial Attacks", equation 2.1)
//
//	min_theta E_(x,y) [ max_{||delta||_inf <= eps} L(theta, x + delta, y) ]
//
// with the inner maximization approximated by an attack:
//
//   - PGD (Madry et al., section 5: L-infinity eps 8/255 on CIFAR-10, 7
//     steps of 2/255 from a uniformly random start in the eps ball),
//   - FGSM with random start, "FGSM-RS" (Wong, Rice and Kolter, ICLR 2020,
//     "Fast is better than free", Algorithm 3: a uniform start in the eps
//     ball, one sign step of 1.25 eps, clipped back to the ball and to
//     [0, 1]), which costs one gradient per image instead of PGD's seven and
//     matches PGD training's robustness at eps 8/255 in their experiments.
//
// Both are one loop (Examples): FGSM-RS is PGD with one step of 1.25 eps.
//
// The training loop is package nn's (nn.Train); this package supplies its
// per-batch hook (Hook, for nn.TrainOptions.BatchHook), so that nn stays
// independent of package attack. With a transform T (an input-transformation
// defense such as the STL projection) the hook trains the classifier M
// behind T as a defender that combines both would (the starred rows of the
// paper's Table 4): the adversarial examples attack the composite M∘T
// through BPDA (attack.BPDA; T's exact vector-Jacobian product when it
// provides one, the identity otherwise), and M learns on T(x_adv). Each
// attack step then costs one application of T.
//
// Determinism: each batch draws its random start from a seed derived from
// Options.Seed and the batch's epoch and position, so a training resumed
// from a checkpoint computes the same adversarial examples, and the same
// weights, as an uninterrupted one.
package advtrain
