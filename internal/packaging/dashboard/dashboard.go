// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package dashboard reads the Grafana dashboard that deploy/ ships: its panels and their PromQL
// queries with the dashboard's variables set, as Grafana would send them to Prometheus, so that
// tests can run them against a real one.
package dashboard

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Panel is one panel of a dashboard and the queries of its targets.
type Panel struct {
	ID      int
	Title   string
	Type    string
	Queries []string
}

type dashboard struct {
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name     string `json:"name"`
			AllValue string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

// variable is $name or ${name} in a query.
var variable = regexp.MustCompile(`\$(\{[a-zA-Z_][a-zA-Z0-9_]*\}|[a-zA-Z_][a-zA-Z0-9_]*)`)

// Panels returns the panels of the dashboard b with every variable of its queries set to the
// value Grafana sends for All (the variable's allValue), or to vars[name] where given. A query
// that names a variable the dashboard does not define is an error.
func Panels(b []byte, vars map[string]string) ([]Panel, error) {
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	values := map[string]string{}
	for _, v := range d.Templating.List {
		if v.AllValue != "" {
			values[v.Name] = v.AllValue
		}
	}
	for k, v := range vars {
		values[k] = v
	}
	var out []Panel
	for _, p := range d.Panels {
		panel := Panel{ID: p.ID, Title: p.Title, Type: p.Type}
		for _, t := range p.Targets {
			var missing []string
			q := variable.ReplaceAllStringFunc(t.Expr, func(m string) string {
				name := strings.Trim(m, "${}")
				v, ok := values[name]
				if !ok {
					missing = append(missing, name)
				}
				return v
			})
			if len(missing) > 0 {
				return nil, fmt.Errorf("panel %d %q: no value for $%s", p.ID, p.Title, strings.Join(missing, ", $"))
			}
			panel.Queries = append(panel.Queries, q)
		}
		out = append(out, panel)
	}
	return out, nil
}
