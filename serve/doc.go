// Package serve is the defense as an HTTP service: a Server loads nothing
// itself but holds a defense (any defense.Transform, usually the saved
// "STL (cluster)" of sections 3.4-3.5) and optionally a classifier, and
// answers
//
//	POST /v1/purify    PNG, JPEG or .npy in (one image, a .npy batch or a
//	                   multipart/form-data batch), the purified images out
//	                   in the same format
//	POST /v1/classify  the same input; JSON with each purified image's
//	                   logits, predicted label and PSNR from the input
//	GET  /healthz      200 while the process runs
//	GET  /readyz       200 while it accepts work, 503 while draining
//	GET  /metrics      Prometheus text format
//
// Requests are batched dynamically: a worker takes the oldest waiting
// request, gathers the requests that arrive within Options.BatchWindow up
// to Options.MaxBatch images, and applies the defense (and the classifier)
// to them at once, the projection's own workers spreading the images over
// the cores. At most Options.QueueImages images wait; a request that would
// exceed that is answered 429 at once, so memory stays bounded under any
// load. Each request has a deadline (Options.Timeout); a request whose
// client goes away or whose deadline passes leaves the queue, and a batch
// whose requests have all gone is cancelled. Bad input is a 4xx answer
// with a JSON body {"error": ..., "kind": ...} naming the problem.
//
// Load is the load generator behind `stl bench serve`.
package serve
