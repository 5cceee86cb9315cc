package mgmt

import "fmt"

// quorumCritical answers /api/health/checks/node-is-quorum-critical
// (rabbit_mgmt_wm_health_check_node_is_quorum_critical): 503 when
// stopping this node would leave the definitions' consensus group
// without a majority of its members up, with RabbitMQ's body (status,
// reason, and the groups that would lose their quorum under "queues");
// 200 otherwise. Replicated queues are not built yet, so the
// definitions' group is the only group that can be critical.
// node-is-mirror-sync-critical stays ok until mirrored queues exist.
func (s *Server) quorumCritical() (int, any) {
	if s.b.NodeName() == "" {
		return 200, map[string]string{"status": "ok", "reason": "single node cluster"}
	}
	critical, up, of := s.b.QuorumCritical()
	if of < 2 {
		return 200, map[string]string{"status": "ok", "reason": "single node cluster"}
	}
	if !critical {
		return 200, map[string]string{"status": "ok"}
	}
	return 503, map[string]any{
		"status": "failed",
		"reason": "There are quorum queues that would lose their quorum if the target node is shut down",
		"queues": []map[string]any{{
			"name":          "definitions",
			"readable_name": fmt.Sprintf("the cluster's definitions (consensus group 1): %d of %d members up, this one included", up, of),
			"virtual_host":  "",
			"type":          "metadata",
		}},
	}
}
