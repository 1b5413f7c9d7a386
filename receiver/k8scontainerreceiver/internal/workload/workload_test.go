// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package workload

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestOf(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("d", maxNameLength-len("-7d9f8b6c5"))
	for _, tc := range []struct {
		name              string
		kind, owner, hash string
		want              Names
	}{
		{"no owner", "", "", "", Names{}},
		{"kind without name", KindReplicaSet, "", "7d9f8b6c5", Names{}},
		{"other kind", "Node", "node-a", "", Names{}},
		{"custom kind", "CloneSet", "web", "", Names{}},
		{"kind is case-sensitive", "replicaset", "web-7d9f8b6c5", "7d9f8b6c5", Names{}},

		{"deployment", KindReplicaSet, "checkout-7d9f8b6c5", "7d9f8b6c5", Names{ReplicaSet: "checkout-7d9f8b6c5", Deployment: "checkout"}},
		{"deployment with dashes", KindReplicaSet, "my-app-v2-5c6b7d8f9", "5c6b7d8f9", Names{ReplicaSet: "my-app-v2-5c6b7d8f9", Deployment: "my-app-v2"}},
		{"replicaset without hash label", KindReplicaSet, "web-7d9f8b6c5", "", Names{ReplicaSet: "web-7d9f8b6c5"}},
		{"hash of another name", KindReplicaSet, "web-7d9f8b6c5", "5c6b7d8f9", Names{ReplicaSet: "web-7d9f8b6c5"}},
		{"hash without dash", KindReplicaSet, "web7d9f8b6c5", "7d9f8b6c5", Names{ReplicaSet: "web7d9f8b6c5"}},
		{"hash is the whole name", KindReplicaSet, "7d9f8b6c5", "7d9f8b6c5", Names{ReplicaSet: "7d9f8b6c5"}},
		{"nothing before the hash", KindReplicaSet, "-7d9f8b6c5", "7d9f8b6c5", Names{ReplicaSet: "-7d9f8b6c5"}},
		{"hash longer than name", KindReplicaSet, "b6c5", "7d9f8b6c5", Names{ReplicaSet: "b6c5"}},
		{"hash only partly a suffix", KindReplicaSet, "web-x7d9f8b6c5", "7d9f8b6c5", Names{ReplicaSet: "web-x7d9f8b6c5"}},
		{"longest uncut deployment", KindReplicaSet, long[1:] + "-7d9f8b6c5", "7d9f8b6c5", Names{ReplicaSet: long[1:] + "-7d9f8b6c5", Deployment: long[1:]}},
		{"deployment name may be cut", KindReplicaSet, long + "-7d9f8b6c5", "7d9f8b6c5", Names{ReplicaSet: long + "-7d9f8b6c5"}},

		{"statefulset", KindStatefulSet, "db", "", Names{StatefulSet: "db"}},
		{"statefulset ignores hash", KindStatefulSet, "db-7d9f8b6c5", "7d9f8b6c5", Names{StatefulSet: "db-7d9f8b6c5"}},
		{"daemonset", KindDaemonSet, "node-exporter", "", Names{DaemonSet: "node-exporter"}},

		{"cronjob", KindJob, "backup-29123456", "", Names{Job: "backup-29123456", CronJob: "backup"}},
		{"cronjob with digits in its name", KindJob, "report-2024-29123456", "", Names{Job: "report-2024-29123456", CronJob: "report-2024"}},
		{"cronjob nine digits", KindJob, "backup-123456789", "", Names{Job: "backup-123456789", CronJob: "backup"}},
		{"cronjob first minute of 2016", KindJob, "backup-24193440", "", Names{Job: "backup-24193440", CronJob: "backup"}},
		{"before cronjobs existed", KindJob, "backup-24193439", "", Names{Job: "backup-24193439"}},
		{"short number", KindJob, "backup-2", "", Names{Job: "backup-2"}},
		{"seven digits", KindJob, "backup-9999999", "", Names{Job: "backup-9999999"}},
		{"seconds", KindJob, "backup-1712345678", "", Names{Job: "backup-1712345678"}},
		{"milliseconds", KindJob, "backup-1712345678901", "", Names{Job: "backup-1712345678901"}},
		{"leading zero", KindJob, "backup-029123456", "", Names{Job: "backup-029123456"}},
		{"no dash", KindJob, "backup29123456", "", Names{Job: "backup29123456"}},
		{"no name before suffix", KindJob, "-29123456", "", Names{Job: "-29123456"}},
		{"only digits", KindJob, "29123456", "", Names{Job: "29123456"}},
		{"trailing dash", KindJob, "backup-", "", Names{Job: "backup-"}},
		{"no suffix", KindJob, "migrate", "", Names{Job: "migrate"}},
		{"letters after digits", KindJob, "backup-29123456x", "", Names{Job: "backup-29123456x"}},
		{"job ignores hash", KindJob, "backup-29123456", "29123456", Names{Job: "backup-29123456", CronJob: "backup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, Of(tc.kind, tc.owner, tc.hash))
		})
	}
}

// TestOfReadsTheCronJobControllersNames names Jobs the way the CronJob controller does, for
// scheduled times from the first CronJobs to well past now.
func TestOfReadsTheCronJobControllersNames(t *testing.T) {
	t.Parallel()
	for _, at := range []time.Time{
		time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2021, 4, 8, 12, 30, 0, 0, time.UTC),
		time.Now(),
		time.Date(2159, 12, 31, 23, 59, 0, 0, time.UTC),
		time.Date(2200, 6, 1, 0, 0, 0, 0, time.UTC),
	} {
		job := "nightly-" + strconv.FormatInt(at.Unix()/60, 10)
		assert.Equal(t, Names{Job: job, CronJob: "nightly"}, Of(KindJob, job, ""), at)
	}
}

func FuzzOf(f *testing.F) {
	for _, s := range [][3]string{
		{KindReplicaSet, "checkout-7d9f8b6c5", "7d9f8b6c5"},
		{KindReplicaSet, "web-7d9f8b6c5", ""},
		{KindReplicaSet, "-x", "x"},
		{KindStatefulSet, "db", ""},
		{KindDaemonSet, "node-exporter", ""},
		{KindJob, "backup-29123456", ""},
		{KindJob, "backup-2", ""},
		{KindJob, "backup-", ""},
		{KindJob, "-29123456", ""},
		{"Node", "node-a", ""},
		{"", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, kind, owner, hash string) {
		n := Of(kind, owner, hash)
		if n != Of(kind, owner, hash) {
			t.Fatalf("Of(%q, %q, %q) is not deterministic", kind, owner, hash)
		}

		// The owner names exactly the workload of its kind, and nothing else is known
		// without one.
		want := Names{}
		switch kind {
		case KindReplicaSet:
			want.ReplicaSet = owner
		case KindStatefulSet:
			want.StatefulSet = owner
		case KindDaemonSet:
			want.DaemonSet = owner
		case KindJob:
			want.Job = owner
		}
		got := n
		got.Deployment, got.CronJob = "", ""
		if got != want {
			t.Fatalf("Of(%q, %q, %q) = %+v, want the owner as %+v", kind, owner, hash, n, want)
		}

		// A Deployment comes only from a ReplicaSet named <deployment>-<hash>.
		if n.Deployment != "" {
			if n.ReplicaSet != n.Deployment+"-"+hash || hash == "" {
				t.Fatalf("Of(%q, %q, %q) = %+v: Deployment is not the ReplicaSet without -hash", kind, owner, hash, n)
			}
		} else if kind == KindReplicaSet && owner != "" && hash != "" && strings.HasSuffix(owner, "-"+hash) &&
			len(owner) > len(hash)+1 && len(owner) < maxNameLength {
			t.Fatalf("Of(%q, %q, %q) = %+v: the Deployment is missing", kind, owner, hash, n)
		}

		// A CronJob comes only from a Job named <cronjob>-<minutes>, minutes within bounds,
		// and always from one.
		if n.CronJob != "" {
			rest, ok := strings.CutPrefix(n.Job, n.CronJob+"-")
			if !ok || n.CronJob == "" || !scheduledMinutes(rest) {
				t.Fatalf("Of(%q, %q, %q) = %+v: the Job is not <CronJob>-<scheduled minute>", kind, owner, hash, n)
			}
		} else if i := strings.LastIndexByte(owner, '-'); kind == KindJob && i > 0 && scheduledMinutes(owner[i+1:]) {
			t.Fatalf("Of(%q, %q, %q) = %+v: the CronJob is missing", kind, owner, hash, n)
		}
	})
}

// scheduledMinutes tells whether s is how the CronJob controller writes a scheduled time.
func scheduledMinutes(s string) bool {
	minutes, err := strconv.ParseInt(s, 10, 64)
	return err == nil && strconv.FormatInt(minutes, 10) == s && minutes >= minMinutes && len(s) <= maxMinuteDigits
}
