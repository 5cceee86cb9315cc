// Preloaded (node --require) into amqplib's own test run, so its tests run
// unchanged against the broker under test ($URL), on any port:
// - a test that passes no URL (the callback_api tests) gets $URL;
// - a test that names the local broker without a port ('amqp://localhost',
//   'amqp://[::1]', or an object with no host or port, as the connect
//   tests do) gets
//   $URL's port: without this they would reach whatever listens on 5672.
// URLs with an explicit port (the tests' deliberately closed ports) and
// URLs that do not parse (the "bad URL" test) are left alone.
const path = require('node:path');
const connect = require(path.join(process.cwd(), 'lib', 'connect'));
const orig = connect.connect;
const target = process.env.URL ? new URL(process.env.URL) : null;
const local = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);
connect.connect = function (url, ...rest) {
  if (!url && target) {
    url = process.env.URL;
  } else if (target && typeof url === 'string') {
    try {
      const u = new URL(url);
      if (!u.port && local.has(u.hostname)) {
        u.port = target.port;
        url = u.toString();
      }
    } catch (_) {
      // not a URL: the test expects the error
    }
  } else if (target && url && typeof url === 'object' && !url.port && (url.hostname === undefined || local.has(url.hostname))) {
    url = Object.assign({}, url, { port: Number(target.port) });
  }
  return orig.call(this, url, ...rest);
};
