// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRecord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		raw  string
		want Record
		err  string
	}{
		{
			name: "host summary",
			raw:  "6,65643,33994402591,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=13065a33b060eef187f138f9f5b0a57d1cd9988e84551bd3193306dc51e154bf,mems_allowed=0,oom_memcg=/oomwatch/kubepods/burstable/pod3ae9a07c-2434-40f4-a248-284c21715000,task_memcg=/oomwatch/kubepods/burstable/pod3ae9a07c-2434-40f4-a248-284c21715000/13065a33b060eef187f138f9f5b0a57d1cd9988e84551bd3193306dc51e154bf,task=workload,pid=1496,uid=0\n",
			want: Record{
				Level: 6, Seq: 65643, SinceBoot: 33994402591 * time.Microsecond,
				Message: "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=13065a33b060eef187f138f9f5b0a57d1cd9988e84551bd3193306dc51e154bf,mems_allowed=0,oom_memcg=/oomwatch/kubepods/burstable/pod3ae9a07c-2434-40f4-a248-284c21715000,task_memcg=/oomwatch/kubepods/burstable/pod3ae9a07c-2434-40f4-a248-284c21715000/13065a33b060eef187f138f9f5b0a57d1cd9988e84551bd3193306dc51e154bf,task=workload,pid=1496,uid=0",
			},
		},
		{
			name: "host Killed process line, level 3",
			raw:  "3,65644,33994402631,-;Memory cgroup out of memory: Killed process 1496 (workload) total-vm:1293432kB, anon-rss:64000kB, file-rss:1844kB, shmem-rss:0kB, UID:0 pgtables:216kB oom_score_adj:998\n",
			want: Record{
				Level: 3, Seq: 65644, SinceBoot: 33994402631 * time.Microsecond,
				Message: "Memory cgroup out of memory: Killed process 1496 (workload) total-vm:1293432kB, anon-rss:64000kB, file-rss:1844kB, shmem-rss:0kB, UID:0 pgtables:216kB oom_score_adj:998",
			},
		},
		{
			name: "host record with continuation lines",
			raw:  "5,65648,34569724662,-;virtio_blk virtio1: [vda] new size: 536870912 512-byte logical blocks (275 GB/256 GiB)\n SUBSYSTEM=virtio\n DEVICE=+virtio:virtio1\n",
			want: Record{
				Level: 5, Seq: 65648, SinceBoot: 34569724662 * time.Microsecond,
				Message: "virtio_blk virtio1: [vda] new size: 536870912 512-byte logical blocks (275 GB/256 GiB)",
				Dict:    map[string]string{"SUBSYSTEM": "virtio", "DEVICE": "+virtio:virtio1"},
			},
		},
		{
			name: "host line with a trailing space",
			raw:  "4,65650,34631220224,-;CPU: 0 UID: 0 PID: 8456 Comm: workload Not tainted 6.18.44-fc-v1252 #1 PREEMPT(none) \n",
			want: Record{
				Level: 4, Seq: 65650, SinceBoot: 34631220224 * time.Microsecond,
				Message: "CPU: 0 UID: 0 PID: 8456 Comm: workload Not tainted 6.18.44-fc-v1252 #1 PREEMPT(none) ",
			},
		},
		{
			name: "escaped bytes in the message and the dictionary",
			raw:  `4,7,8,-;a\x5cb\x0ac\x7F;d\xe2\x82\xac` + "\n" + ` KEY=v\x3dw` + "\n",
			want: Record{
				Level: 4, Seq: 7, SinceBoot: 8 * time.Microsecond,
				Message: "a\\b\nc\x7f;d€", Dict: map[string]string{"KEY": "v=w"},
			},
		},
		{
			name: "backslashes that are no escape stay",
			raw:  `6,1,2,-;\xZZ \x4 \` + "\n",
			want: Record{Level: 6, Seq: 1, SinceBoot: 2 * time.Microsecond, Message: `\xZZ \x4 \`},
		},
		{
			name: "user facility and more prefix fields",
			raw:  "14,9,10,-,caller=T123;hello\n",
			want: Record{Level: 6, Facility: 1, Seq: 9, SinceBoot: 10 * time.Microsecond, Message: "hello"},
		},
		{
			name: "continuation flag, no final newline",
			raw:  "4,11,12,c;part",
			want: Record{Level: 4, Seq: 11, SinceBoot: 12 * time.Microsecond, Message: "part"},
		},
		{
			name: "largest numbers",
			raw:  "2147483647,18446744073709551615,9223372036854775;x\n",
			want: Record{Level: 7, Facility: 268435455, Seq: 18446744073709551615, SinceBoot: 9223372036854775 * time.Microsecond, Message: "x"},
		},
		{name: "no prefix", raw: "hello\n", err: "no ';'"},
		{name: "empty", raw: "", err: "no ';'"},
		{name: "bad priority", raw: "x,1,2,-;m\n", err: "priority"},
		{name: "priority too large", raw: "2147483648,1,2,-;m\n", err: "priority"},
		{name: "negative sequence number", raw: "6,-1,2,-;m\n", err: "sequence number"},
		{name: "sequence number overflow", raw: "6,18446744073709551616,2,-;m\n", err: "sequence number"},
		{name: "no timestamp", raw: "6,1;m\n", err: "timestamp"},
		{name: "timestamp overflow", raw: "6,1,9223372036854776,-;m\n", err: "timestamp"},
		{name: "second record", raw: "6,1,2,-;m\n6,2,3,-;n\n", err: "does not begin with a space"},
		{name: "continuation without =", raw: "6,1,2,-;m\n KEY\n", err: "not KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRecord([]byte(tc.raw))
			if tc.err != "" {
				require.ErrorIs(t, err, ErrMalformed)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// readRecords parses the records of a file as /dev/kmsg gives them.
func readRecords(t testing.TB, path string) []Record {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var records []Record
	for len(data) > 0 {
		end := recordEnd(data, true)
		require.Positive(t, end, "%s ends within a line", path)
		rec, err := ParseRecord(data[:end])
		require.NoError(t, err)
		records = append(records, rec)
		data = data[end:]
	}
	return records
}
