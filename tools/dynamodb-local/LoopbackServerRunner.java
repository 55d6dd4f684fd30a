// Starts DynamoDB Local bound to one host address (127.0.0.1 by default).
//
// DynamoDB Local's own ServerRunner has no -host flag: its Jetty server listens
// on all interfaces. This launcher builds the server exactly as ServerRunner
// does (same command-line flags: -inMemory, -port, -sharedDb, ...), sets the
// host of its Jetty connector, then starts it. Telemetry is never configured,
// so nothing is sent anywhere.
//
// Compiled and run by scripts/services.sh:
//   javac -cp '<lib>/*' -d <classes> LoopbackServerRunner.java
//   java -Djava.library.path=<lib> -Dtxbox.dynamodb.host=127.0.0.1 \
//        -cp '<classes>:<lib>/*' LoopbackServerRunner -inMemory -sharedDb -port 8000

import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public final class LoopbackServerRunner {
    private LoopbackServerRunner() {}

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("txbox.dynamodb.host", "127.0.0.1");

        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);

        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server jetty = (Server) field.get(proxy);

        int bound = 0;
        for (Connector connector : jetty.getConnectors()) {
            if (connector instanceof ServerConnector serverConnector) {
                serverConnector.setHost(host);
                bound++;
            }
        }
        if (bound == 0) {
            throw new IllegalStateException("no Jetty ServerConnector found; cannot bind DynamoDB Local to " + host);
        }

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                proxy.stop();
            } catch (Exception e) {
                // exiting anyway
            }
        }, "txbox-dynamodb-shutdown"));

        proxy.start();

        for (Connector connector : jetty.getConnectors()) {
            if (connector instanceof ServerConnector serverConnector) {
                System.out.println("DynamoDB Local listening on " + serverConnector.getHost() + ":" + serverConnector.getLocalPort());
            }
        }

        proxy.join();
    }
}
