// A long-running AWS SDK for JavaScript v3 client: the default credential chain (which
// reads AWS_CONTAINER_CREDENTIALS_FULL_URI, a profile's credential_process, …), one
// client for the whole run, GetCallerIdentity every EVERY_MS (default 1000) milliseconds,
// printing "<unix millis> <ARN>" or "<unix millis> error: <message>" per call.
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";

const every = Number(process.env.EVERY_MS ?? 1000);
const client = new STSClient({});
for (;;) {
  const now = Date.now();
  try {
    const out = await client.send(new GetCallerIdentityCommand({}));
    console.log(`${now} ${out.Arn}`);
  } catch (err) {
    console.log(`${now} error: ${String(err?.message ?? err).replace(/\n/g, " ")}`);
  }
  await new Promise((resolve) => setTimeout(resolve, every));
}
