// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scrapertest

import (
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
)

// The scraper's log records, as a logs pipeline receives them.

// Records returns the log records the sink holds, flattened, and empties it. Each carries its
// resource's pod name as the attribute test.resource.pod.
func Records(sink *consumertest.LogsSink) []plog.LogRecord {
	var out []plog.LogRecord
	for _, ld := range sink.AllLogs() {
		for i := range ld.ResourceLogs().Len() {
			rl := ld.ResourceLogs().At(i)
			for j := range rl.ScopeLogs().Len() {
				lrs := rl.ScopeLogs().At(j).LogRecords()
				for k := range lrs.Len() {
					lr := plog.NewLogRecord()
					lrs.At(k).CopyTo(lr)
					pod, _ := rl.Resource().Attributes().Get("k8s.pod.name")
					lr.Attributes().PutStr("test.resource.pod", pod.Str())
					out = append(out, lr)
				}
			}
		}
	}
	sink.Reset()
	return out
}
