package mgmt

import (
	"net/http"
)

// membership serves warrenctl's join_cluster, reset and
// forget_cluster_node (ADR 0008) on the control listener.
func (s *Server) membership(r *http.Request, verb string) (int, any, error) {
	var body struct {
		Node    string `json:"node"`
		Address string `json:"address"`
		Offline bool   `json:"offline"`
	}
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	switch verb {
	case "join_cluster":
		res, err := s.b.JoinCluster(body.Node, body.Address)
		if err != nil {
			return 0, nil, errStatus(400, "%v", err)
		}
		return 200, res, nil
	case "reset":
		restored, err := s.b.Reset()
		if err != nil {
			return 0, nil, errStatus(400, "%v", err)
		}
		return 200, map[string]any{"restored_definitions": restored}, nil
	case "forget_cluster_node":
		if body.Offline {
			rejoin, err := s.b.ForgetClusterNodeOffline(body.Node)
			if err != nil {
				return 0, nil, errStatus(400, "%v", err)
			}
			if rejoin == nil {
				rejoin = []string{}
			}
			return 200, map[string]any{"must_rejoin": rejoin}, nil
		}
		if err := s.b.ForgetClusterNode(body.Node); err != nil {
			return 0, nil, errStatus(400, "%v", err)
		}
		return 204, nil, nil
	}
	return 0, nil, errStatus(404, "Not Found")
}
