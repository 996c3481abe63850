// The seeds' hello-user program in Java: greets API_USER and proves it received API_PASSWORD.
// It prints a SHA-256 checksum of the password, never the password itself. Java 8 source, so
// one jar runs on every Java base (`javac --release 11` and later).

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;

public class PrintEnv {
    public static void main(String[] args) throws Exception {
        String user = System.getenv().getOrDefault("API_USER", "<unset>");
        String password = System.getenv("API_PASSWORD");
        System.out.println("Hello " + user);
        System.out.println("Java " + System.getProperty("java.version"));
        if (password == null) {
            System.out.println("API_PASSWORD is not set");
        } else {
            byte[] digest = MessageDigest.getInstance("SHA-256")
                .digest(password.getBytes(StandardCharsets.UTF_8));
            StringBuilder hex = new StringBuilder();
            for (byte b : digest) {
                hex.append(String.format("%02x", b));
            }
            System.out.println("API_PASSWORD sha256 checksum: " + hex);
        }
    }
}
