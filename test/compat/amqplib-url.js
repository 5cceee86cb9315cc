// Preloaded (node --require) into amqplib's own test run: amqplib connects
// to amqp://localhost when a test passes no URL (its callback_api tests do);
// this makes that default the URL of the broker under test ($URL), so the
// tests run unchanged against a broker on any port or vhost.
const path = require('node:path');
const connect = require(path.join(process.cwd(), 'lib', 'connect'));
const orig = connect.connect;
connect.connect = function (url, ...rest) {
  if (!url && process.env.URL) url = process.env.URL;
  return orig.call(this, url, ...rest);
};
