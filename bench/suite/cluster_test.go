package main

import (
	"testing"
)

// rabbitHomes reads the node of each queue's master from rabbitmqctl
// list_queues name pid, counting only the queues of the scenario.
func TestRabbitHomes(t *testing.T) {
	out := "b22-1-0\t<warrenbenchA1@localhost.1650000000.1234.0>\n" +
		"b22-1-1\t<warrenbenchB2@localhost.1650000001.99.0>\n" +
		"b22-1-2\t<warrenbenchA1@localhost.1650000000.1240.0>\n" +
		"other\t<warrenbenchC3@localhost.1650000002.7.0>\n"
	c := &cluster{kind: "RabbitMQ", nodes: []*broker{{ctl: func(args ...string) (string, error) { return out, nil }}}}
	homes, err := rabbitHomes(c, "b22-1-")
	if err != nil {
		t.Fatal(err)
	}
	if len(homes) != 2 || homes["warrenbenchA1@localhost"] != 2 || homes["warrenbenchB2@localhost"] != 1 {
		t.Fatalf("homes %v", homes)
	}
	if s := fmtHomes(homes); s != "warrenbenchA1@localhost 2, warrenbenchB2@localhost 1" {
		t.Fatalf("fmtHomes %q", s)
	}
}

// A cluster scenario runs on the clusters, under their names, one
// cluster running at a time, and only when -cluster is on; the
// single-node scenarios run on the brokers.
func TestClusterScenariosRunOnClusters(t *testing.T) {
	var ran []string
	s := scenario{id: 21, cluster: func(c *cluster, _ mode) ([]value, error) {
		ran = append(ran, c.name)
		return nil, nil
	}}
	stopped := 0
	other := &broker{stop: func() { stopped++ }, pid: func() int { return 0 }}
	clusters := []*cluster{{name: "Warren", formed: true, running: true}, {name: "RabbitMQ", formed: true, running: true, nodes: []*broker{other}}}
	brokers := []*broker{{name: "Warren"}, {name: "RabbitMQ"}}
	ts := targets(s, allModes[0], brokers, clusters)
	if len(ts) != 2 || ts[0].name != "Warren" || ts[1].name != "RabbitMQ" {
		t.Fatalf("targets %+v", ts)
	}
	if _, err := ts[0].run(allModes[0]); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || ran[0] != "Warren" {
		t.Fatalf("ran on %v", ran)
	}
	if stopped != 1 || clusters[1].running {
		t.Fatalf("the other cluster still runs while Warren's is measured (stops %d)", stopped)
	}
	if single := targets(scenario{id: 3}, allModes[0], brokers, clusters); len(single) != 2 || single[0].name != "Warren" {
		t.Fatalf("single-node targets %+v", single)
	}
	if !selected(s) {
		t.Fatal("cluster scenario not selected by default")
	}
	*clusterOn = false
	defer func() { *clusterOn = true }()
	if selected(s) {
		t.Fatal("cluster scenario selected with -cluster=false")
	}
	if !selected(scenario{id: 3}) {
		t.Fatal("-cluster=false left out a single-node scenario")
	}
}
