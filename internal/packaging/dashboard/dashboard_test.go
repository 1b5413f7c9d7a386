// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package dashboard

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `{
  "templating": {"list": [
    {"name": "datasource", "type": "datasource"},
    {"name": "cluster", "allValue": ".*"},
    {"name": "namespace", "allValue": ".*"}
  ]},
  "panels": [
    {"id": 1, "title": "kills", "type": "timeseries", "targets": [
      {"expr": "sum(x{k8s_cluster_name=~\"$cluster\",k8s_namespace_name=~\"${namespace}\"})"}
    ]},
    {"id": 2, "title": "nodes", "type": "timeseries", "targets": [{"expr": "y"}, {"expr": "z"}]}
  ]
}`

func TestPanelsSetTheVariables(t *testing.T) {
	got, err := Panels([]byte(sample), nil)
	require.NoError(t, err)
	assert.Equal(t, []Panel{
		{ID: 1, Title: "kills", Type: "timeseries", Queries: []string{`sum(x{k8s_cluster_name=~".*",k8s_namespace_name=~".*"})`}},
		{ID: 2, Title: "nodes", Type: "timeseries", Queries: []string{"y", "z"}},
	}, got)

	got, err = Panels([]byte(sample), map[string]string{"namespace": "shop"})
	require.NoError(t, err)
	assert.Equal(t, `sum(x{k8s_cluster_name=~".*",k8s_namespace_name=~"shop"})`, got[0].Queries[0])
}

func TestPanelsNameAnUnknownVariable(t *testing.T) {
	_, err := Panels([]byte(`{"panels": [{"id": 3, "title": "t", "targets": [{"expr": "rate(x[$__rate_interval])"}]}]}`), nil)
	assert.EqualError(t, err, `panel 3 "t": no value for $__rate_interval`)
	_, err = Panels([]byte(`{`), nil)
	assert.Error(t, err)
}
