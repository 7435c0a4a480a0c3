package webhook

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Result label values of RequestDuration.
const (
	ResultAllowed = "allowed" // admitted, with or without a patch
	ResultDenied  = "denied"  // refused by a rule
	ResultError   = "error"   // the handler could not decide (bad object, lookup failure)
	ResultInvalid = "invalid" // the HTTP body never became an AdmissionReview
	ResultPanic   = "panic"   // a handler panicked (recovered; a bug)
)

// RequestDuration is the admission latency per path and result. Admission sits on the
// pod start-up path, so the buckets start at 50µs: the interesting differences are
// well below a millisecond.
var RequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name: "strictgate_webhook_request_duration_seconds",
	Help: "Time from receiving an admission HTTP request to writing the response, by webhook path and result.",
	Buckets: []float64{
		50e-6, 100e-6, 250e-6, 500e-6, 750e-6,
		1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5,
	},
}, []string{"path", "result"})

func init() {
	metrics.Registry.MustRegister(RequestDuration)
}

type resultKey struct{}

// instrument serves wh at path and records RequestDuration for every request,
// including those refused before the handler runs (not an AdmissionReview: see
// serveAdmission).
func instrument(path string, wh *admission.Webhook) http.Handler {
	inner := wh.Handler
	wh.Handler = admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		res, _ := ctx.Value(resultKey{}).(*string)
		if res != nil {
			*res = ResultPanic // overwritten below unless inner panics
		}
		resp := inner.Handle(ctx, req)
		if res != nil {
			*res = classify(resp)
		}
		return resp
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		result := ResultInvalid
		serveAdmission(w, r.WithContext(context.WithValue(r.Context(), resultKey{}, &result)), wh)
		RequestDuration.WithLabelValues(path, result).Observe(time.Since(start).Seconds())
	})
}

func classify(resp admission.Response) string {
	switch {
	case resp.Allowed:
		return ResultAllowed
	case resp.Result != nil && resp.Result.Code == http.StatusForbidden:
		return ResultDenied
	default:
		return ResultError
	}
}
