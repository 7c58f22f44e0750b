<%-- vpath's Tomcat stack: one item page. GET /item.jsp?id=N runs three statements that name Item_N on MariaDB
     over JDBC (MariaDB Connector/J): the item row, its reviews, and its view counter. The connection comes from
     DriverManager (a new TCP connection per request, closed at the end) or, when the context parameter
     vpath.jdbc is "pool", from the container's DataSource java:comp/env/jdbc/items (tomcat-dbcp). --%>
<%@ page session="false" contentType="text/html; charset=UTF-8"
    import="java.sql.*,javax.sql.DataSource,javax.naming.InitialContext" %><%!
    static String jdbcUrl(jakarta.servlet.ServletContext ctx) {
        return ctx.getInitParameter("vpath.jdbc.url");
    }
%><%
    String idParam = request.getParameter("id");
    int id;
    try {
        id = Integer.parseInt(idParam);
    } catch (Exception e) {
        response.sendError(400, "id must be a number");
        return;
    }
    String name = "Item_" + id;
    ServletContext ctx = application;
    boolean pool = "pool".equals(ctx.getInitParameter("vpath.jdbc"));
    Connection c;
    if (pool) {
        DataSource ds = (DataSource) new InitialContext().lookup("java:comp/env/jdbc/items");
        c = ds.getConnection();
    } else {
        c = DriverManager.getConnection(jdbcUrl(ctx), ctx.getInitParameter("vpath.jdbc.user"),
            ctx.getInitParameter("vpath.jdbc.password"));
    }
    String title = null, price = null;
    long views = 0;
    StringBuilder reviews = new StringBuilder();
    int updated;
    try {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT id, name, price, views FROM item WHERE name = ?")) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                if (rs.next()) {
                    title = rs.getString("name");
                    price = rs.getString("price");
                    views = rs.getLong("views");
                }
            }
        }
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT id, stars, body FROM review WHERE item_name = ? ORDER BY id")) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    reviews.append("<li>").append(rs.getInt("stars")).append(" stars: ")
                        .append(rs.getString("body")).append("</li>\n");
                }
            }
        }
        try (PreparedStatement ps = c.prepareStatement(
                "UPDATE item SET views = views + 1 WHERE name = ?")) {
            ps.setString(1, name);
            updated = ps.executeUpdate();
        }
    } finally {
        c.close();
    }
    if (title == null) {
        response.setStatus(404);
    }
%><!DOCTYPE html>
<html><head><title><%= name %></title></head>
<body>
<h1><%= name %></h1>
<p>price <%= price %>, views <%= views + updated %> (<%= pool ? "pooled" : "new" %> connection)</p>
<ul>
<%= reviews %></ul>
</body></html>
