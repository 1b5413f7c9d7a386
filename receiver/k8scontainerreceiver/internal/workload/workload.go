// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package workload names the workloads a pod belongs to from what the pod itself carries: its
// controller owner reference and its pod-template-hash label. It makes no API calls, so it
// names only what the owner's name gives away: the Deployment of a ReplicaSet and the
// CronJob of a Job are read from the names their controllers give, and left unknown when a
// name does not have that form.
package workload

// Names are the workload names of a pod; empty strings are unknown.
type Names struct {
	ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob string
}

// Owner kinds of pods that name a workload.
const (
	KindReplicaSet  = "ReplicaSet"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindJob         = "Job"
)

// The Deployment controller names a ReplicaSet <deployment>-<pod-template-hash> and cuts
// the Deployment name so the whole fits in a DNS subdomain name (pkg/controller/deployment,
// generateReplicaSetName). A ReplicaSet name of the full length may hold a cut Deployment
// name, so it names none.
const maxNameLength = 253

// The CronJob controller names a Job <cronjob>-<scheduled time in minutes since the Unix
// epoch> (pkg/controller/cronjob, getJobName and getTimeHashInMinutes). CronJobs came in
// 2016, so the suffix is a number of minutes since then: from minMinutes, 8 digits today
// and 9 from the year 2160. The first controller, gone since Kubernetes 1.22, counted in
// seconds; its Jobs are not read, nor Jobs named after a timestamp in seconds or
// milliseconds, nor short numbers such as backup-2.
const (
	minMinutes      = 24_193_440 // 2016-01-01T00:00:00Z
	maxMinuteDigits = 9
)

// Of returns the workload names of a pod whose controller owner reference has ownerKind and
// ownerName and whose pod-template-hash label is podTemplateHash (empty when absent).
func Of(ownerKind, ownerName, podTemplateHash string) Names {
	if ownerName == "" {
		return Names{}
	}
	switch ownerKind {
	case KindReplicaSet:
		return Names{ReplicaSet: ownerName, Deployment: deployment(ownerName, podTemplateHash)}
	case KindStatefulSet:
		return Names{StatefulSet: ownerName}
	case KindDaemonSet:
		return Names{DaemonSet: ownerName}
	case KindJob:
		return Names{Job: ownerName, CronJob: cronJob(ownerName)}
	}
	return Names{}
}

// deployment returns the Deployment that named ReplicaSet rs, or "".
func deployment(rs, hash string) string {
	if hash == "" || len(rs) >= maxNameLength {
		return ""
	}
	n := len(rs) - len(hash) - 1
	if n < 1 || rs[n] != '-' || rs[n+1:] != hash {
		return ""
	}
	return rs[:n]
}

// cronJob returns the CronJob that named job, or "".
func cronJob(job string) string {
	i := len(job)
	for i > 0 && job[i-1] >= '0' && job[i-1] <= '9' {
		i--
	}
	digits := job[i:]
	if i < 2 || job[i-1] != '-' || len(digits) == 0 || len(digits) > maxMinuteDigits || digits[0] == '0' {
		return ""
	}
	var minutes int
	for _, c := range []byte(digits) {
		minutes = minutes*10 + int(c-'0')
	}
	if minutes < minMinutes {
		return ""
	}
	return job[:i-1]
}
