package mgmt

import (
	"fmt"
	"net/http"
)

// healthRoutes: GET /api/aliveness-test/{vhost} and the health checks
// under /api/health/checks/ (each also with segments after it, as the
// switch router answered; read-only: see readOnly).
func (s *Server) healthRoutes(rt *router) {
	rt.handle("/api/aliveness-test/{vhost}", s.alivenessTest)
	rt.handlePrefix("/api/health/checks/alarms", s.healthAlarms)
	rt.handlePrefix("/api/health/checks/local-alarms", s.healthAlarms)
	rt.handlePrefix("/api/health/checks/virtual-hosts", s.healthOK)
	rt.handlePrefix("/api/health/checks/node-is-quorum-critical", s.healthNodeIsQuorumCritical)
	rt.handlePrefix("/api/health/checks/node-is-mirror-sync-critical", s.healthNodeIsMirrorSyncCritical)
}

func (s *Server) alivenessTest(u user, r *http.Request) (int, any, error) {
	vh := r.PathValue("vhost")
	if s.b.VHost(vh) == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	if !s.hasPerm(u, vh) { // RabbitMQ declares a queue there as the user
		return 0, nil, errStatus(401, "User not authorised to access virtual host")
	}
	return 200, map[string]string{"status": "ok"}, nil
}

// healthAlarms: 503 while any resource alarm is in effect.
func (s *Server) healthAlarms(u user, r *http.Request) (int, any, error) {
	if al := s.b.Alarms(); len(al) > 0 {
		return 503, map[string]any{"status": "failed", "reason": "There are alarms in effect in the cluster", "alarms": al}, nil
	}
	return 200, map[string]string{"status": "ok"}, nil
}

func (s *Server) healthOK(u user, r *http.Request) (int, any, error) {
	return 200, map[string]string{"status": "ok"}, nil
}

// healthNodeIsQuorumCritical: whether stopping this node would leave a
// consensus group without a majority (quorumCritical).
func (s *Server) healthNodeIsQuorumCritical(u user, r *http.Request) (int, any, error) {
	code, body := s.quorumCritical()
	return code, body, nil
}

// healthNodeIsMirrorSyncCritical: whether stopping this node would leave a
// mirrored queue without a synchronised mirror (none yet: always ok).
func (s *Server) healthNodeIsMirrorSyncCritical(u user, r *http.Request) (int, any, error) {
	return s.healthOK(u, r)
}

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
